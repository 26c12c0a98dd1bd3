//go:build unix

package main

import (
	"errors"
	"syscall"
)

// smallReceiveBuffer shrinks a socket's receive buffer before it connects,
// so that a client that stops reading makes the sender block soon.
func smallReceiveBuffer(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	})
	return errors.Join(err, serr)
}
