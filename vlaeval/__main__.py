from vlaeval.cli import main

main()
