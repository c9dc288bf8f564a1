package cli

import "runtime"

func runtimeCores() int { return runtime.GOMAXPROCS(0) }
