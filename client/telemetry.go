package client

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"

	v1 "berth.dev/berth/api/v1"
)

// WorkloadLogs streams the logs of a Service or Function (kind) as text,
// one line per log line; see LogOptions. With Follow the stream stays open
// until ctx ends or the server closes it; the caller closes the reader.
func (c *Client) WorkloadLogs(ctx context.Context, env, kind, name string, opts LogOptions) (io.ReadCloser, error) {
	path, err := objectPath(kind, env, name)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	if opts.Follow {
		q.Set("follow", "1")
	}
	if opts.Since != "" {
		q.Set("since", opts.Since)
	}
	if opts.Until != "" {
		q.Set("until", opts.Until)
	}
	if opts.Tail > 0 {
		q.Set("tail", strconv.Itoa(opts.Tail))
	}
	if opts.Instance != "" {
		q.Set("instance", opts.Instance)
	}
	if opts.Revision > 0 {
		q.Set("revision", strconv.FormatInt(opts.Revision, 10))
	}
	if opts.Grep != "" {
		q.Set("grep", opts.Grep)
	}
	if opts.Timestamps {
		q.Set("timestamps", "1")
	}
	resp, err := c.send(ctx, http.MethodGet, path+"/logs", q, "", nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Metrics fetches the server's Prometheus metrics in the text format; the
// caller closes the reader. Parse it with
// github.com/prometheus/common/expfmt.
func (c *Client) Metrics(ctx context.Context) (io.ReadCloser, error) {
	h := http.Header{"Accept": {"text/plain;version=0.0.4"}}
	resp, err := c.request(ctx, http.MethodGet, "/metrics", nil, h, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.Body, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, v1.NotFound("the server at %s serves no /metrics", c.base)
	}
	return nil, c.decodeError(resp)
}
