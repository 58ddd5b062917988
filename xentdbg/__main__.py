from xentdbg.cli import main

main()
