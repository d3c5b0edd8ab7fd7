from swdispatch.cli import main

main()
