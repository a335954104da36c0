;; A `tokenhook_init` whose output is its input: a test's config is what
;; the hook answers when it is prepared (an error, or commands it must not
;; give at init).
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "{\"commands\":[]}")
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 4096)
  (func (export "tokenhook_init") (param $ptr i32) (param $len i32) (result i64)
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
      (i64.extend_i32_u (local.get $len))))
  (func (export "tokenhook_run") (param i32 i32) (result i64)
    (i64.const 68719476751))) ;; (16 << 32) | 15
