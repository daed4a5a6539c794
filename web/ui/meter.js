// The microphone level meter: a WebAudio AnalyserNode read once per animation frame.

export class LevelMeter {
  constructor(fill, meter) {
    this.fill = fill;
    this.meter = meter;
    this.context = null;
    this.source = null;
    this.analyser = null;
    this.samples = null;
    this.frame = 0;
    this.level = 0;
  }

  /** Measure `track` (replacing any track measured before). */
  attach(track) {
    this.detach();
    // The context is created on first use, inside the Connect click, so autoplay rules allow it.
    this.context ??= new AudioContext();
    this.context.resume().catch(() => {});
    this.analyser = this.context.createAnalyser();
    this.analyser.fftSize = 1024;
    this.samples = new Float32Array(this.analyser.fftSize);
    this.source = this.context.createMediaStreamSource(new MediaStream([track]));
    this.source.connect(this.analyser);
    this.frame = requestAnimationFrame(() => this.#tick());
  }

  detach() {
    cancelAnimationFrame(this.frame);
    this.source?.disconnect();
    this.source = null;
    this.analyser = null;
    this.level = 0;
    this.#draw(0);
  }

  #tick() {
    if (!this.analyser) return;
    this.analyser.getFloatTimeDomainData(this.samples);
    let sum = 0;
    for (const v of this.samples) sum += v * v;
    const rms = Math.sqrt(sum / this.samples.length);
    // dBFS mapped so that -60 dB is empty and 0 dB full: speech sits in the upper half.
    const target = rms > 0 ? Math.min(1, Math.max(0, (20 * Math.log10(rms) + 60) / 60)) : 0;
    // Rise fast, fall slowly: easier to read than the raw value.
    this.level = target > this.level ? target : this.level * 0.9 + target * 0.1;
    this.#draw(this.level);
    this.frame = requestAnimationFrame(() => this.#tick());
  }

  #draw(level) {
    this.fill.style.transform = `scaleX(${level.toFixed(3)})`;
    this.fill.dataset.hot = String(level > 0.85);
    this.meter.setAttribute("aria-valuenow", String(Math.round(level * 100)));
  }
}
