package wscancel

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/internal/attrjson"
	"github.com/coder/websocket"
)

// ReadJSON reads the next data message and decodes it as JSON into v. A
// message that is not valid JSON for v yields an error that also holds a
// websocket.CloseError with websocket.StatusInvalidFramePayloadData
// (1007): a handler returning it closes the connection with that code. A v
// that is not a non-nil pointer is the server's mistake, not the peer's:
// ReadJSON returns a *json.InvalidUnmarshalError at once and reads nothing.
func (c *Conn) ReadJSON(ctx context.Context, v any) error {
	if rv := reflect.ValueOf(v); rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("wscancel: read JSON: %w", &json.InvalidUnmarshalError{Type: reflect.TypeOf(v)})
	}
	_, data, err := c.Read(ctx)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("wscancel: read JSON: %w (%w)", err,
			websocket.CloseError{Code: websocket.StatusInvalidFramePayloadData, Reason: "invalid JSON"})
	}
	return nil
}

// WriteJSON writes v as a JSON text message, as Write does.
func (c *Conn) WriteJSON(ctx context.Context, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("wscancel: write JSON: %w", err)
	}
	return c.Write(ctx, websocket.MessageText, data)
}

// A ProgressMessage is what WithProgress sends the peer for a progress
// report of the connection's operation.
type ProgressMessage struct {
	Type    string         `json:"type"` // always "progress"
	Message string         `json:"message"`
	Attrs   map[string]any `json:"attrs,omitempty"`
}

// forwardProgress sends a progress report of the connection's operation
// to its peer.
func (c *Conn) forwardProgress(_ *cancel.Operation, p cancel.Progress) {
	if !c.open.Load() {
		return // before the handshake
	}
	data, err := json.Marshal(ProgressMessage{Type: "progress", Message: p.Message, Attrs: attrjson.Map(p.Attrs)})
	if err != nil {
		return
	}
	if c.ws.Write(context.Background(), websocket.MessageText, data) == nil {
		c.sent()
	}
}
