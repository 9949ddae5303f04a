;; Copies /input/in.txt to stdout and to /output/out.txt. Exits 2 when the input is missing.
;; Preopens: fd 3 is /input, fd 4 is /output.
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "in.txt")
  (data (i32.const 32) "out.txt")
  ;; 64: input fd, 68: output fd, 72: read iovec, 80: bytes read, 84: write iovec, 92: bytes written
  (func (export "_start")
    (local $n i32)
    (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 6)
          (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 64))
      (then (call $proc_exit (i32.const 2))))
    ;; O_CREAT | O_TRUNC
    (if (call $path_open (i32.const 4) (i32.const 0) (i32.const 32) (i32.const 7)
          (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 68))
      (then (call $proc_exit (i32.const 3))))
    (i32.store (i32.const 72) (i32.const 1024))
    (i32.store (i32.const 76) (i32.const 4096))
    (block $done
      (loop $copy
        (if (call $fd_read (i32.load (i32.const 64)) (i32.const 72) (i32.const 1) (i32.const 80))
          (then (call $proc_exit (i32.const 4))))
        (local.set $n (i32.load (i32.const 80)))
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store (i32.const 84) (i32.const 1024))
        (i32.store (i32.const 88) (local.get $n))
        (drop (call $fd_write (i32.const 1) (i32.const 84) (i32.const 1) (i32.const 92)))
        (drop (call $fd_write (i32.load (i32.const 68)) (i32.const 84) (i32.const 1) (i32.const 92)))
        (br $copy)))))
