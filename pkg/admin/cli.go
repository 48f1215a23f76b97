package admin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// DefaultCLIURL is where `gopotency admin` looks for the admin listener.
const DefaultCLIURL = "http://127.0.0.1:9003"

const cliUsage = `usage: gopotency admin <inspect|purge|policies> [flags]

  inspect   show a key's state, mark, status and expiry (the body with --include-body)
  purge     delete a key so the client's retry runs (--force for a running request)
  policies  list the policies and the inputs their keys are made of

The key is named by what the client sent: --key and the policy's scope
headers (--header), or the whole request body of the API as JSON (--input;
"-" reads stdin, which keeps credentials off the command line). Flags given
with --input override its fields. The token comes from --token-file,
GOPOTENCY_ADMIN_TOKEN_FILE or GOPOTENCY_ADMIN_TOKEN. See docs/admin.md.
`

// CLI runs `gopotency admin …`: args exclude "admin". It prints the API's
// JSON answer to stdout and returns an error for any answer but 200, so
// the exit status can be scripted on.
func CLI(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, cliUsage)
		return errors.New("admin: name a command: inspect, purge or policies")
	}
	cmd := args[0]
	fs := flag.NewFlagSet("gopotency admin "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, cliUsage+"\nflags:\n"); fs.PrintDefaults() }
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	base := fs.String("url", env("GOPOTENCY_ADMIN_URL", DefaultCLIURL), "admin listener base URL (env GOPOTENCY_ADMIN_URL)")
	tokenFile := fs.String("token-file", env("GOPOTENCY_ADMIN_TOKEN_FILE", ""), "file holding the bearer token (first token in it; env GOPOTENCY_ADMIN_TOKEN_FILE, or the token in GOPOTENCY_ADMIN_TOKEN)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on the whole call")
	input := fs.String("input", "", `JSON request body as the API takes it; "-" reads stdin`)
	var kr keyRequest
	var headers headerFlags
	fs.StringVar(&kr.Key, "key", "", "the Idempotency-Key value the client sent")
	fs.StringVar(&kr.Policy, "policy", "", "policy of the client's route (default: default_policy)")
	fs.Var(&headers, "header", `a client request header the policy reads, "Name: value" (repeatable)`)
	fs.StringVar(&kr.Principal, "principal", "", "the client's mTLS principal (policies with scope_principal)")
	fs.StringVar(&kr.SourceAddress, "source-address", "", "the client's address (auto_key.source_address policies)")
	fs.StringVar(&kr.Method, "method", "", "method of the request a derived key (auto_key) came from")
	fs.StringVar(&kr.Path, "path", "", "path with query of that request")
	bodyFile := fs.String("body-file", "", "file holding that request's body")
	fs.StringVar(&kr.Reason, "reason", "", "note for the audit log")
	includeBody := fs.Bool("include-body", false, "inspect: include the recorded body (base64)")
	force := fs.Bool("force", false, "purge: also a key whose request may still be running (see docs/admin.md)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("admin %s: unexpected arguments %q", cmd, fs.Args())
	}
	route, method, query := "", http.MethodPost, url.Values{}
	switch cmd {
	case "inspect":
		route = RouteInspect
		if *includeBody {
			query.Set("include_body", "true")
		}
	case "purge":
		route = RoutePurge
		if *force {
			query.Set("force", "true")
		}
	case "policies":
		route, method = RoutePolicies, http.MethodGet
	default:
		fmt.Fprint(stderr, cliUsage)
		return fmt.Errorf("admin: unknown command %q", cmd)
	}
	tok, err := cliToken(*tokenFile, getenv)
	if err != nil {
		return err
	}
	var body io.Reader
	if method == http.MethodPost {
		req, err := cliRequest(fs, &kr, headers, *input, *bodyFile, stdin)
		if err != nil {
			return err
		}
		raw, err := json.Marshal(req)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	target := strings.TrimRight(*base, "/") + route
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	hreq.Header.Set("Authorization", "Bearer "+tok)
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("admin: reading the answer: %w", err)
	}
	if _, err := stdout.Write(answer); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var p problem
		_ = json.Unmarshal(answer, &p)
		return fmt.Errorf("admin %s: %s: %s", cmd, resp.Status, p.Title)
	}
	return nil
}

// cliRequest builds the body from --input and the flags set.
func cliRequest(fs *flag.FlagSet, kr *keyRequest, headers headerFlags, input, bodyFile string, stdin io.Reader) (*keyRequest, error) {
	req := &keyRequest{}
	if input != "" {
		var rd io.Reader = stdin
		if input != "-" {
			f, err := os.Open(input)
			if err != nil {
				return nil, fmt.Errorf("admin: --input: %w", err)
			}
			defer f.Close()
			rd = f
		}
		var err error
		if req, err = decodeKeyRequest(rd); err != nil {
			return nil, fmt.Errorf("admin: --input: %w", err)
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	over := func(name string, dst *string, v string) {
		if set[name] {
			*dst = v
		}
	}
	over("key", &req.Key, kr.Key)
	over("policy", &req.Policy, kr.Policy)
	over("principal", &req.Principal, kr.Principal)
	over("source-address", &req.SourceAddress, kr.SourceAddress)
	over("method", &req.Method, kr.Method)
	over("path", &req.Path, kr.Path)
	over("reason", &req.Reason, kr.Reason)
	for _, h := range headers {
		if req.Headers == nil {
			req.Headers = map[string]string{}
		}
		req.Headers[h[0]] = h[1]
	}
	if bodyFile != "" {
		b, err := os.ReadFile(bodyFile)
		if err != nil {
			return nil, fmt.Errorf("admin: --body-file: %w", err)
		}
		// base64: JSON would replace invalid UTF-8 (a gzip or protobuf
		// body) and so name another key.
		s := base64.StdEncoding.EncodeToString(b)
		req.Body, req.BodyBase64 = nil, &s
	}
	return req, nil
}

// cliToken reads the first token of file, else GOPOTENCY_ADMIN_TOKEN.
func cliToken(file string, getenv func(string) string) (string, error) {
	if file == "" {
		if tok := strings.TrimSpace(getenv("GOPOTENCY_ADMIN_TOKEN")); tok != "" {
			return tok, nil
		}
		return "", errors.New("admin: no token: give --token-file, or set GOPOTENCY_ADMIN_TOKEN_FILE or GOPOTENCY_ADMIN_TOKEN")
	}
	toks, _, err := readTokenFile(file)
	if err != nil {
		return "", err
	}
	return toks[0], nil
}

// headerFlags collects repeated --header "Name: value" flags.
type headerFlags [][2]string

func (h *headerFlags) String() string { return "" }

func (h *headerFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return errors.New(`want "Name: value"`)
	}
	*h = append(*h, [2]string{strings.TrimSpace(name), strings.TrimSpace(value)})
	return nil
}
