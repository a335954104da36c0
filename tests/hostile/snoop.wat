;; Tries to carry state from one call to the next: it looks for the marks an
;; earlier call left in its data segment, in the rest of its initial memory and
;; in a page it grows, then leaves those marks for the next call. Expected:
;; every call reports "fresh" (commands []), never "stale" (a hook_error).
(module
  (memory (export "memory") 2)
  (global $marks (mut i32) (i32.const 0))
  (data (i32.const 16) "{\"commands\":[]}")
  (data (i32.const 64) "{\"error\":{\"message\":\"stale\"}}")
  (data (i32.const 128) "\00")
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 4096)
  (func (export "tokenhook_run") (param i32 i32) (result i64)
    (local $grown i32)
    ;; A fresh instance has one more page after growing by one.
    (local.set $grown (i32.mul (memory.grow (i32.const 1)) (i32.const 65536)))
    (global.get $marks)
    ;; in the data segment, which starts as 0
    (i32.load8_u (i32.const 128))
    i32.or
    ;; in zero-initialised memory of the initial size
    (i32.load (i32.const 70000))
    i32.or
    ;; in the grown page
    (i32.load (i32.add (local.get $grown) (i32.const 100)))
    i32.or
    ;; leave the marks for whoever comes next
    (global.set $marks (i32.const 1))
    (i32.store8 (i32.const 128) (i32.const 1))
    (i32.store (i32.const 70000) (i32.const 1))
    (i32.store (i32.add (local.get $grown) (i32.const 100)) (i32.const 1))
    (if (result i64)
      (then (i64.const 274877906973)) ;; (64 << 32) | 29
      (else (i64.const 68719476751))))) ;; (16 << 32) | 15
