;; Loops forever in its start function, before any export is called.
;; Expected: out_of_fuel / timeout during instantiation.
(module
  (memory (export "memory") 1)
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024)
  (func $start (loop $forever (br $forever)))
  (start $start)
  (func (export "tokenhook_run") (param i32 i32) (result i64) (i64.const 0)))
