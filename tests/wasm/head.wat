;; Reads all of /input/in.bin and writes its first 256 MiB to /output/out.bin, 1 MiB at a time.
;; Exits 2 when the input is missing, 3 when the output cannot be made, 4 on a failed read,
;; 5 on a short write. Preopens: fd 3 is /input, fd 4 is /output.
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  ;; 18 pages: the first for names and counters, then a 1 MiB buffer at 65536.
  (memory (export "memory") 18)
  (data (i32.const 16) "in.bin")
  (data (i32.const 32) "out.bin")
  ;; 64: input fd, 68: output fd, 72: read iovec, 80: bytes read, 84: write iovec, 92: bytes written
  (func (export "_start")
    (local $n i32)
    (local $left i32)
    (local $take i32)
    (local.set $left (i32.const 268435456))
    (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 6)
          (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 64))
      (then (call $proc_exit (i32.const 2))))
    ;; O_CREAT | O_TRUNC
    (if (call $path_open (i32.const 4) (i32.const 0) (i32.const 32) (i32.const 7)
          (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 68))
      (then (call $proc_exit (i32.const 3))))
    (i32.store (i32.const 72) (i32.const 65536))
    (i32.store (i32.const 76) (i32.const 1048576))
    (block $done
      (loop $copy
        (if (call $fd_read (i32.load (i32.const 64)) (i32.const 72) (i32.const 1) (i32.const 80))
          (then (call $proc_exit (i32.const 4))))
        (local.set $n (i32.load (i32.const 80)))
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $take (select (local.get $n) (local.get $left)
          (i32.lt_u (local.get $n) (local.get $left))))
        (if (local.get $take)
          (then
            (i32.store (i32.const 84) (i32.const 65536))
            (i32.store (i32.const 88) (local.get $take))
            (drop (call $fd_write (i32.load (i32.const 68)) (i32.const 84) (i32.const 1) (i32.const 92)))
            (if (i32.ne (i32.load (i32.const 92)) (local.get $take))
              (then (call $proc_exit (i32.const 5))))
            (local.set $left (i32.sub (local.get $left) (local.get $take)))))
        (br $copy)))))
