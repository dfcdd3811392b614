from si.cli import main

main()
