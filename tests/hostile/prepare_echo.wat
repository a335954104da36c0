;; Prepares its config once (contract v1's optional `tokenhook_init`): keeps
;; the config's bytes at 4096 and their length at 4092. Each call returns
;; that config as its output (so a test's config is a hook output), after
;; scribbling over the kept bytes: the next call must see them as prepared,
;; never as an earlier call left them. Without a prepared config a call
;; returns nothing (not contract-v1 JSON).
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "{\"commands\":[]}")
  (func (export "tokenhook_abi_v1"))
  (func (export "tokenhook_alloc") (param i32) (result i32) i32.const 32768)
  (func (export "tokenhook_init") (param $ptr i32) (param $len i32) (result i64)
    (memory.copy (i32.const 4096) (local.get $ptr) (local.get $len))
    (i32.store (i32.const 4092) (local.get $len))
    (i64.const 68719476751)) ;; (16 << 32) | 15
  (func (export "tokenhook_run") (param i32 i32) (result i64)
    (local $len i32)
    (local.set $len (i32.load (i32.const 4092)))
    (memory.copy (i32.const 16384) (i32.const 4096) (local.get $len))
    (i32.store8 (i32.const 4096) (i32.const 88)) ;; 'X'
    (i32.store (i32.const 4092) (i32.const 1))
    (i64.or
      (i64.const 70368744177664) ;; 16384 << 32
      (i64.extend_i32_u (local.get $len)))))
