;; Asks for 16 MiB more memory, again and again.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $more
      (drop (memory.grow (i32.const 256)))
      (br $more))))
