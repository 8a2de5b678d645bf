from charforge.cli import main

main()
