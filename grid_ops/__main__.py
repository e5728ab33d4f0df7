from grid_ops.quick import main

main()
