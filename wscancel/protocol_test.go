package wscancel_test

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cancelable-go/cancelable/cancel"
	"github.com/cancelable-go/cancelable/wscancel"
)

// A peer that breaks the protocol (coder/websocket answers 1002) is
// recorded as what it is: a close with 1002, sent by us, reason error;
// not as a peer that vanished.
func TestProtocolError(t *testing.T) {
	frames := map[string][]byte{
		"reserved opcode": maskedFrame(0x80|0x3, []byte("x")),
		"RSV2 set":        maskedFrame(0x80|0x20|0x1, []byte("x")),
		"fragmented ping": maskedFrame(0x9, nil),
		"unmasked":        {0x81, 0x01, 'x'}, // coder/websocket drops it without a word: we send the 1002
	}
	for name, frame := range frames {
		t.Run(name, func(t *testing.T) {
			url, rec := server(t, echo, wscancel.WithCloseTimeout(100*time.Millisecond)) // the raw client never answers the close
			conn, err := net.Dial("tcp", strings.TrimPrefix(strings.TrimSuffix(url, "/ws"), "ws://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("handshake: %v, %v", resp, err)
			}
			conn.Write(frame)
			if code := readCloseCode(br); code != 1002 {
				t.Errorf("client got close code %d, want 1002", code)
			}
			e := rec.wait(t)
			if e.op.Reason() != cancel.ReasonError || !strings.HasPrefix(message(e.op), "protocol error") {
				t.Errorf("reason, message = %v, %q; want error, protocol error", e.op.Reason(), message(e.op))
			}
			e.wantClose(t, 1002, "local", "error")
		})
	}
}

// maskedFrame builds a short client frame (masked) with first byte b0.
func maskedFrame(b0 byte, payload []byte) []byte {
	f := []byte{b0, 0x80 | byte(len(payload)), 1, 2, 3, 4}
	for i, b := range payload {
		f = append(f, b^byte(i%4+1))
	}
	return f
}

// readCloseCode reads server frames up to a close frame and returns its
// code; 1005 for one without a code, -1 for none at all.
func readCloseCode(br *bufio.Reader) int {
	for {
		var hd [2]byte
		if _, err := io.ReadFull(br, hd[:]); err != nil {
			return -1
		}
		n := int(hd[1] & 0x7f)
		if n == 126 {
			var l [2]byte
			if _, err := io.ReadFull(br, l[:]); err != nil {
				return -1
			}
			n = int(binary.BigEndian.Uint16(l[:]))
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return -1
		}
		if hd[0]&0x0f == 0x8 {
			if n < 2 {
				return 1005
			}
			return int(binary.BigEndian.Uint16(p))
		}
	}
}
