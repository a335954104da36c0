;; Unbounded recursion. Expected: stack_overflow.
(module
  (memory (export "memory") 1)
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024)
  (func $down (param i32) (result i32)
    (i32.add (call $down (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "tokenhook_run") (param i32 i32) (result i64)
    (drop (call $down (i32.const 0)))
    (i64.const 0)))
