package main

// The classifier behind the service: one kiln model, loaded once and run by
// every request at once, and the image preparation in front of it.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // image.Decode reads JPEG
	_ "image/png"  // and PNG
	"io"
	"math"
	"math/rand"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"kiln"
)

// Classifier runs an image classifier: a model whose input is one image
// tensor f32[N, C, H, W] (C is 1 or 3; N is 1, or a symbolic batch run with
// 1) and whose first result holds one score per class.
type Classifier struct {
	model   *kiln.Model
	input   string // the image parameter's name
	c, h, w int
	classes int
	labels  []string
	mean    []float32 // per channel, on values in [0, 1]
	std     []float32
	Notes   []string // what the log should say about the model
	// MaxImageBytes is the largest request body Handler reads.
	MaxImageBytes int64
}

// Config says what NewClassifier loads.
type Config struct {
	Model   string // a .onnx or .kiln file
	Weights string // a .safetensors file for the parameters other than the image ("" for none)
	Device  string // "" for kiln's default
	Labels  []string
	Seed    int64 // for the weights of a .kiln model given none
}

// NewClassifier loads the model and makes one run on a blank image, so that
// it is compiled before the first request.
func NewClassifier(cfg Config) (*Classifier, error) {
	m, err := kiln.Load(cfg.Model, kiln.Options{Device: cfg.Device})
	if err != nil {
		return nil, err
	}
	c := &Classifier{model: m, MaxImageBytes: defaultMaxImageBytes}
	if err := c.setup(cfg); err != nil {
		m.Close()
		return nil, err
	}
	if _, err := c.Classify(image.NewGray(image.Rect(0, 0, c.w, c.h))); err != nil {
		m.Close()
		return nil, fmt.Errorf("a first run on a blank image: %w", err)
	}
	return c, nil
}

func (c *Classifier) setup(cfg Config) error {
	if cfg.Weights != "" {
		if err := c.model.LoadWeights(cfg.Weights); err != nil {
			return err
		}
	}
	var unbound []kiln.TensorInfo
	for _, p := range c.model.Params() {
		if !p.Bound {
			unbound = append(unbound, p)
		}
	}
	if len(unbound) == 0 || len(unbound[0].Shape) != 4 || unbound[0].DType != "f32" {
		return fmt.Errorf("%s: the first unbound parameter should be an image f32[N, C, H, W]", cfg.Model)
	}
	img := unbound[0]
	c.input = img.Name
	c.c, c.h, c.w = int(img.Shape[1]), int(img.Shape[2]), int(img.Shape[3])
	if (c.c != 1 && c.c != 3) || c.h <= 0 || c.w <= 0 || img.Shape[0] > 1 {
		return fmt.Errorf("%s: parameter '%s' is %s; an image f32[1, C, H, W] with C = 1 or 3 is needed", cfg.Model,
			img.Name, img.Type)
	}
	if rest := unbound[1:]; len(rest) > 0 { // the weights of a .kiln model given none
		if !strings.HasSuffix(cfg.Model, ".kiln") {
			return fmt.Errorf("%s: parameter '%s' has no value: pass -weights", cfg.Model, rest[0].Name)
		}
		if err := bindRandom(c.model, rest, cfg.Seed); err != nil {
			return err
		}
		c.Notes = append(c.Notes, fmt.Sprintf("no -weights: %d parameters got random values (seed %d); "+
			"the classes mean nothing until trained weights are given", len(rest), cfg.Seed))
	}
	res := c.model.Results()
	if len(res) == 0 || len(res[0].Shape) != 2 || res[0].Shape[1] <= 0 || res[0].DType != "f32" {
		return fmt.Errorf("%s: the first result should be the scores f32[N, CLASSES]", cfg.Model)
	}
	c.classes = int(res[0].Shape[1])
	c.labels = cfg.Labels
	if len(c.labels) != 0 && len(c.labels) != c.classes {
		return fmt.Errorf("%d labels for %d classes", len(c.labels), c.classes)
	}
	if c.c == 1 { // MNIST's statistics
		c.mean, c.std = []float32{0.1307}, []float32{0.3081}
	} else { // ImageNet's
		c.mean, c.std = []float32{0.485, 0.456, 0.406}, []float32{0.229, 0.224, 0.225}
	}
	return nil
}

// bindRandom binds every parameter given to values drawn as PyTorch
// initialises layers: uniform in +-1/sqrt(fan_in), fan_in being the weight's
// elements per output (a bias takes the fan_in of the weight before it).
func bindRandom(m *kiln.Model, params []kiln.TensorInfo, seed int64) error {
	rng := rand.New(rand.NewSource(seed))
	fanIn := 1
	for _, p := range params {
		n, perOut := 1, 1
		for k, d := range p.Shape {
			if d < 0 {
				return fmt.Errorf("parameter '%s' is %s: a weight needs a known shape", p.Name, p.Type)
			}
			n *= int(d)
			if k > 0 {
				perOut *= int(d)
			}
		}
		if len(p.Shape) > 1 {
			fanIn = perOut
		}
		bound := 1 / math.Sqrt(float64(fanIn))
		v := make([]float32, n)
		for i := range v {
			v[i] = float32((2*rng.Float64() - 1) * bound)
		}
		t, err := kiln.NewTensor(p.DType, p.Shape, v)
		if err != nil {
			return err
		}
		if err := m.Bind(p.Name, t); err != nil {
			return err
		}
	}
	return nil
}

// Close frees the model.
func (c *Classifier) Close() error { return c.model.Close() }

// Prediction is one class of an answer.
type Prediction struct {
	Class       int     `json:"class"`
	Label       string  `json:"label"`
	Probability float64 `json:"probability"`
}

// Classify answers the five likeliest classes, likeliest first.
func (c *Classifier) Classify(img image.Image) ([]Prediction, error) {
	x, err := kiln.NewTensor("f32", []int64{1, int64(c.c), int64(c.h), int64(c.w)}, c.Prepare(img))
	if err != nil {
		return nil, err
	}
	out, err := c.model.Run(map[string]*kiln.Tensor{c.input: x})
	if err != nil {
		return nil, err
	}
	probs := probabilities(out[0].Data.([]float32)[:c.classes])
	order := make([]int, c.classes)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return probs[order[a]] > probs[order[b]] })
	if len(order) > 5 {
		order = order[:5]
	}
	top := make([]Prediction, len(order))
	for i, k := range order {
		label := strconv.Itoa(k)
		if c.labels != nil {
			label = c.labels[k]
		}
		top[i] = Prediction{Class: k, Label: label, Probability: probs[k]}
	}
	return top, nil
}

// probabilities: the scores themselves when they already are probabilities
// (a model ending in softmax), else their softmax.
func probabilities(scores []float32) []float64 {
	p := make([]float64, len(scores))
	sum, max, inRange := 0.0, math.Inf(-1), true
	for i, s := range scores {
		p[i] = float64(s)
		sum += p[i]
		max = math.Max(max, p[i])
		inRange = inRange && p[i] >= 0 && p[i] <= 1
	}
	if inRange && math.Abs(sum-1) < 1e-3 {
		return p
	}
	sum = 0
	for i := range p {
		p[i] = math.Exp(p[i] - max)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// Prepare resizes img to the model's H x W (an area average when
// shrinking, bilinear when enlarging), takes grey (luma) or RGB values in
// [0, 1] and normalises each channel: (v - mean) / std; C order, [C, H, W].
func (c *Classifier) Prepare(img image.Image) []float32 {
	out := make([]float32, c.c*c.h*c.w)
	b := img.Bounds()
	sx, sy := float64(b.Dx())/float64(c.w), float64(b.Dy())/float64(c.h)
	for y := 0; y < c.h; y++ {
		for x := 0; x < c.w; x++ {
			var rgb [3]float64
			if sx > 1 || sy > 1 {
				rgb = areaAverage(img, b.Min.X+int(float64(x)*sx), b.Min.Y+int(float64(y)*sy),
					b.Min.X+int(math.Ceil(float64(x+1)*sx)), b.Min.Y+int(math.Ceil(float64(y+1)*sy)))
			} else {
				rgb = bilinear(img, float64(b.Min.X)+(float64(x)+0.5)*sx-0.5, float64(b.Min.Y)+(float64(y)+0.5)*sy-0.5)
			}
			if c.c == 1 {
				grey := 0.299*rgb[0] + 0.587*rgb[1] + 0.114*rgb[2]
				out[y*c.w+x] = (float32(grey) - c.mean[0]) / c.std[0]
				continue
			}
			for ch := 0; ch < 3; ch++ {
				out[(ch*c.h+y)*c.w+x] = (float32(rgb[ch]) - c.mean[ch]) / c.std[ch]
			}
		}
	}
	return out
}

func pixel(img image.Image, x, y int) [3]float64 {
	r, g, b, _ := img.At(x, y).RGBA()
	return [3]float64{float64(r) / 0xffff, float64(g) / 0xffff, float64(b) / 0xffff}
}

// areaAverage: the mean of the pixels in [x0, x1) x [y0, y1).
func areaAverage(img image.Image, x0, y0, x1, y1 int) [3]float64 {
	b := img.Bounds()
	if x1 > b.Max.X {
		x1 = b.Max.X
	}
	if y1 > b.Max.Y {
		y1 = b.Max.Y
	}
	var sum [3]float64
	n := 0
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			p := pixel(img, x, y)
			sum[0], sum[1], sum[2] = sum[0]+p[0], sum[1]+p[1], sum[2]+p[2]
			n++
		}
	}
	if n == 0 {
		return pixel(img, x0, y0)
	}
	return [3]float64{sum[0] / float64(n), sum[1] / float64(n), sum[2] / float64(n)}
}

// bilinear samples at (fx, fy) in pixel coordinates, clamped to the image.
func bilinear(img image.Image, fx, fy float64) [3]float64 {
	b := img.Bounds()
	clamp := func(v, lo, hi int) int {
		if v < lo {
			return lo
		}
		if v >= hi {
			return hi - 1
		}
		return v
	}
	x0, y0 := int(math.Floor(fx)), int(math.Floor(fy))
	ax, ay := fx-float64(x0), fy-float64(y0)
	weight := func(d int, a float64) float64 { // of the neighbour at offset d (0 or 1)
		if d == 0 {
			return 1 - a
		}
		return a
	}
	var out [3]float64
	for dy := 0; dy < 2; dy++ {
		for dx := 0; dx < 2; dx++ {
			w := weight(dx, ax) * weight(dy, ay)
			p := pixel(img, clamp(x0+dx, b.Min.X, b.Max.X), clamp(y0+dy, b.Min.Y, b.Max.Y))
			for ch := range out {
				out[ch] += w * p[ch]
			}
		}
	}
	return out
}

// The largest image a request may send, unless MaxImageBytes says.
const defaultMaxImageBytes = 16 << 20

// Handler serves POST /classify (the image as the body, or as the form
// file "image"), GET /healthz and GET / (how to use it).
func (c *Classifier) Handler(modelName string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/classify", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			answerError(w, http.StatusMethodNotAllowed, "POST an image (PNG or JPEG) to /classify")
			return
		}
		data, err := imageBody(w, r, c.MaxImageBytes)
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				answerError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the image is over %d bytes", c.MaxImageBytes))
			} else {
				answerError(w, http.StatusBadRequest, err.Error())
			}
			return
		}
		img, format, err := image.Decode(bytes.NewReader(data))
		if err != nil {
			answerError(w, http.StatusBadRequest, "not a PNG or JPEG image: "+err.Error())
			return
		}
		top, err := c.Classify(img)
		if err != nil {
			answerError(w, http.StatusInternalServerError, err.Error())
			return
		}
		answer(w, http.StatusOK, map[string]any{"model": modelName, "image": map[string]any{
			"format": format, "width": img.Bounds().Dx(), "height": img.Bounds().Dy()}, "top": top})
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			answerError(w, http.StatusNotFound, "no such page; POST an image to /classify")
			return
		}
		fmt.Fprintf(w, "kiln classify: %s, input %dx%d (%d channel(s)), %d classes\n"+
			"  curl --data-binary @image.png http://HOST/classify\n", modelName, c.w, c.h, c.c, c.classes)
	})
	return mux
}

// imageBody reads the request's image: the form file "image" of a
// multipart form, else the whole body (at most limit bytes either way).
func imageBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		return io.ReadAll(r.Body)
	}
	if err := r.ParseMultipartForm(limit); err != nil {
		return nil, err
	}
	f, _, err := r.FormFile("image")
	if err != nil {
		return nil, errors.New(`the form has no file "image"`)
	}
	defer f.Close()
	return io.ReadAll(f)
}

func answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func answerError(w http.ResponseWriter, status int, msg string) {
	answer(w, status, map[string]string{"error": msg})
}
