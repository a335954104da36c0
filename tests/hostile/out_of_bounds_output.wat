;; Returns an output range beyond its 64 KiB memory. Expected: invalid_output.
(module
  (memory (export "memory") 1)
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "tokenhook_run") (param i32 i32) (result i64)
    ;; (65000 << 32) | 1000
    (i64.const 279172874241000)))
