package check

import (
	"bufio"
	"bytes"
	"encoding/json"

	"sigs.k8s.io/yaml"
)

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

func equalJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// yamlUnmarshal decodes YAML into v through JSON, as the objects are.
func yamlUnmarshal(b []byte, v any) error { return yaml.Unmarshal(b, v) }
