package client

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"

	v1 "berth.dev/berth/api/v1"
)

// ImageEntry is an image as GET /api/v1/images lists it: in the built-in
// registry (Repository and Tag set), unpacked on the node, or both.
type ImageEntry = v1.ImageEntry

// Images lists the registry's images and the node's. A server without a
// registry answers plain node images; those come back with Node set.
func (c *Client) Images(ctx context.Context) ([]ImageEntry, error) {
	var raw []json.RawMessage
	if err := c.do(ctx, http.MethodGet, "/api/v1/images", nil, "", nil, &raw); err != nil {
		return nil, err
	}
	out := make([]ImageEntry, 0, len(raw))
	for _, r := range raw {
		var e ImageEntry
		if err := json.Unmarshal(r, &e); err != nil {
			return nil, v1.Errorf(v1.ErrInternal, "decode image list: %v", err)
		}
		if !bytes.Contains(r, []byte(`"registry"`)) {
			e.Node = true
		}
		out = append(out, e)
	}
	return out, nil
}

// PushImageArchive stores the images of an OCI image layout tar or
// docker-save tar in the built-in registry without unpacking them on the
// node (ImportImage does both).
func (c *Client) PushImageArchive(ctx context.Context, r io.Reader) ([]v1.Image, error) {
	var images []v1.Image
	q := url.Values{"node": {"false"}}
	if err := c.do(ctx, http.MethodPost, "/api/v1/images/import", q, "application/x-tar", r, &images); err != nil {
		return nil, err
	}
	return images, nil
}

// TagImage makes target name, in the built-in registry, the image source
// names there.
func (c *Client) TagImage(ctx context.Context, source, target string) (v1.Image, error) {
	body, _ := json.Marshal(map[string]string{"source": source, "target": target})
	var img v1.Image
	if err := c.do(ctx, http.MethodPost, "/api/v1/images/tag", nil, "application/json", bytes.NewReader(body), &img); err != nil {
		return v1.Image{}, err
	}
	return img, nil
}
