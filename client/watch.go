package client

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	v1 "berth.dev/berth/api/v1"
)

// WatchOptions narrow a watch. The zero value watches every kind the
// watch shows in every environment of the token, from now.
type WatchOptions struct {
	Environment string
	// Kinds keeps events of these kinds (v1.KindService, v1.KindExecution…).
	Kinds []string
	// ResourceVersion resumes after that store revision (a BOOKMARK's or
	// an event's); 0 is from now.
	ResourceVersion uint64
}

// Watch streams changes of objects (GET /api/v1/watch) to fn, a BOOKMARK
// first, until ctx ends (it answers ctx's error), the server ends the
// stream (nil: watch again from the last ResourceVersion seen), or fn
// answers an error (that error). A resourceVersion older than the server
// keeps is a Conflict: read again and watch from now.
func (c *Client) Watch(ctx context.Context, opts WatchOptions, fn func(v1.WatchEvent) error) error {
	q := url.Values{}
	if opts.Environment != "" {
		q.Set("environment", opts.Environment)
	}
	if len(opts.Kinds) > 0 {
		q.Set("kind", strings.Join(opts.Kinds, ","))
	}
	if opts.ResourceVersion > 0 {
		q.Set("resourceVersion", strconv.FormatUint(opts.ResourceVersion, 10))
	}
	resp, err := c.send(ctx, http.MethodGet, "/api/v1/watch", q, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var ev v1.WatchEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return v1.Errorf(v1.ErrInternal, "watch: decode %q: %v", sc.Text(), err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// WhoAmI answers who the client's token is: its name, role and
// environments.
func (c *Client) WhoAmI(ctx context.Context) (v1.WhoAmI, error) {
	var who v1.WhoAmI
	err := c.do(ctx, http.MethodGet, "/api/v1/whoami", nil, "", nil, &who)
	return who, err
}
