from urbansec.cli import main

main()
