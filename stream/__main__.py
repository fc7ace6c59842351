from stream.app import main

main()
