;; Has no tokenhook_run. Expected: refused at load, contract_mismatch naming it.
(module
  (memory (export "memory") 1)
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024))
