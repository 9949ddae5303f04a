;; Sleeps 60 s (one relative monotonic-clock subscription to poll_oneoff), then writes "awake".
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 200) "awake\n")
  (func (export "_start")
    ;; The subscription at 0: userdata 0, tag 0 (clock), clock id 1 (monotonic) at 16,
    ;; timeout 60 s in nanoseconds at 24, precision 0, flags 0 (relative).
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 60000000000))
    ;; One event out at 64, the count of events at 128.
    (drop (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
    (i32.store (i32.const 136) (i32.const 200))
    (i32.store (i32.const 140) (i32.const 6))
    (drop (call $fd_write (i32.const 1) (i32.const 136) (i32.const 1) (i32.const 144)))))
