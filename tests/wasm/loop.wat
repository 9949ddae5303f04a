;; A tight loop: counts to 300 million.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32)
    (loop $again
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const 300000000))))))
