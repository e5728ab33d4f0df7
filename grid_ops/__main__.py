from grid_ops.cli.quick import main

main()
