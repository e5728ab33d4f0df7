from grid_ops.cli import main

main()
