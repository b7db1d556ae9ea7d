from thermolens.cli import main

main()
