package client

import (
	"context"
	"net/http"

	v1 "berth.dev/berth/api/v1"
)

// DashboardLink asks the server for a one-use login link to its web
// dashboard for the client's token; the answer's URL is the full link.
// The token itself never appears in it.
func (c *Client) DashboardLink(ctx context.Context) (url string, link v1.DashboardLink, err error) {
	err = c.do(ctx, http.MethodPost, "/ui/login-links", nil, "", nil, &link)
	return c.base + link.Path, link, err
}
