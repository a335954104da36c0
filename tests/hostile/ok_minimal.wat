;; A correct, minimal contract-v1 hook: logs one line and adds a scope.
;; Expected: success, commands [{"add_scope":"read:orders"}].
(module
  (import "tokenhook" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "{\"commands\":[{\"add_scope\":\"read:orders\"}]}")
  (data (i32.const 512) "hello from wat")
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "tokenhook_run") (param i32 i32) (result i64)
    (call $log (i32.const 1) (i32.const 512) (i32.const 14))
    ;; (16 << 32) | 42
    (i64.const 68719476778)))
