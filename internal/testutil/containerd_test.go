package testutil_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"

	"berth.dev/berth/internal/testutil"
)

func TestStartContainerd(t *testing.T) {
	testutil.RequireContainerd(t)
	socket, stop, err := testutil.StartContainerd("")
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(socket)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Version(ctx); err != nil {
		t.Errorf("containerd does not answer on %s: %v", socket, err)
	}
	c.Close()
	stop()
	if _, err := os.Stat(filepath.Dir(socket)); !os.IsNotExist(err) {
		t.Errorf("stop left %s behind", filepath.Dir(socket))
	}
}
