// Command pause is the sandbox ("pause") container of the test node's pods: it holds the pod's
// namespaces, reaps the zombies it inherits as PID 1, and exits on SIGINT or SIGTERM.
// Written for tests/env because no pause image can be pulled here (no internet); it does what
// Kubernetes' build/pause/linux/pause.c does.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
