;; Claims hook contract v2. Expected: refused at load, contract_mismatch.
(module
  (memory (export "memory") 1)
  (func (export "tokenhook_abi_v2"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "tokenhook_run") (param i32 i32) (result i64) (i64.const 0)))
