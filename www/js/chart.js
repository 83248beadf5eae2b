// A minimal line chart on a canvas: one or more named series of (step, value) points.
const COLORS = ['#3b5bdb', '#c92a2a', '#2b8a3e', '#e67700'];

export class LineChart {
  constructor(canvas, names) {
    this.canvas = canvas;
    this.series = names.map((name) => ({ name, points: [] }));
  }
  reset() {
    this.series.forEach((s) => (s.points = []));
    this.draw();
  }
  push(step, values) {
    values.forEach((v, i) => {
      if (v !== undefined && v !== null && Number.isFinite(v)) this.series[i].points.push([step, v]);
    });
    this.draw();
  }
  draw() {
    const c = this.canvas.getContext('2d');
    const { width: w, height: h } = this.canvas;
    c.clearRect(0, 0, w, h);
    const pts = this.series.flatMap((s) => s.points);
    if (!pts.length) return;
    const pad = 34;
    const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
    const [x0, x1] = [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)];
    let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
    const X = (x) => pad + ((x - x0) / (x1 - x0)) * (w - pad - 8);
    const Y = (y) => h - 16 - ((y - y0) / (y1 - y0)) * (h - 28);
    c.font = '10px sans-serif';
    c.fillStyle = '#667';
    c.fillText(y1.toPrecision(3), 2, 12);
    c.fillText(y0.toPrecision(3), 2, h - 16);
    // The x labels are the steps drawn: a chart of one step says "step 1", not a range to 2.
    c.fillText(`step ${x0}`, pad, h - 2);
    if (Math.max(...xs) > x0) c.fillText(`step ${Math.max(...xs)}`, w - 50, h - 2);
    this.series.forEach((s, i) => {
      c.strokeStyle = COLORS[i % COLORS.length];
      c.beginPath();
      s.points.forEach(([x, y], j) => (j ? c.lineTo(X(x), Y(y)) : c.moveTo(X(x), Y(y))));
      c.stroke();
      c.fillStyle = COLORS[i % COLORS.length];
      // One point draws no line: mark it.
      if (s.points.length === 1) { const [x, y] = s.points[0]; c.fillRect(X(x) - 2, Y(y) - 2, 4, 4); }
      if (this.series.length > 1) c.fillText(s.name, pad + 4 + i * 70, 10);
    });
  }
}
