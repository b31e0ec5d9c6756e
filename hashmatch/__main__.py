from hashmatch.cli import main

main()
