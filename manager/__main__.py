from manager.cli import manager_main

manager_main()
