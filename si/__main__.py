from si.entry import main

main()
