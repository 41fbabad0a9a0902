from manager.cli import manager_main

if __name__ == "__main__":  # not when multiprocessing's spawn imports it
    manager_main()
