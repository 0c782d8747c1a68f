from yoloq.cli import main

main()
