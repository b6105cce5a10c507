package devstack

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// startServer starts one of the stack's servers with its output in
// logPath, and tracks it so that Stop ends it.
func (s *Stack) startServer(name string, cmd *exec.Cmd, logPath string, stopSig syscall.Signal) (*Process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s log: %w", name, err)
	}
	p, err := StartProcess(name, cmd, logFile, "", stopSig)
	if err != nil {
		_ = logFile.Close()
		return nil, err
	}
	p.logPath = logPath
	go func() {
		<-p.Done()
		_ = logFile.Close()
	}()
	s.track(p)
	return p, nil
}
