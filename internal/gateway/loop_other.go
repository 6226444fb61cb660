//go:build !linux

package gateway

import (
	"errors"
	"net"
)

// loops are Linux's (epoll); elsewhere every connection is Server's.
type loops struct{}

func loopsEnabled() bool { return false }

func newLoops(*Server, *Gateway) (*loops, error) { return nil, errors.New("event loops need Linux") }

func (*loops) take(net.Conn) bool { return false }
func (*loops) shutdown()          {}
func (*loops) active() int64      { return 0 }
func (*loops) close()             {}
