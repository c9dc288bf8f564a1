package store_test

import "os"

func chmod(p string, m os.FileMode) error { return os.Chmod(p, m) }

func isRoot() bool { return os.Geteuid() == 0 }
