;; Grows memory a page at a time until growth fails, then traps like Rust's
;; out-of-memory abort. Expected: memory_limit.
(module
  (memory (export "memory") 1)
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "tokenhook_run") (param i32 i32) (result i64)
    (loop $more
      (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1))
        (then unreachable))
      (br $more))
    (i64.const 0)))
