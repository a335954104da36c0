;; Loops forever in tokenhook_run. Expected: out_of_fuel (or timeout with huge fuel).
(module
  (memory (export "memory") 1)
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "tokenhook_run") (param i32 i32) (result i64)
    (loop $forever (br $forever))
    (i64.const 0)))
