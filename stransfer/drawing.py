"""Drawing without the engines: fonts, colours and the training loss chart (the loop draws it; importing the
API from here would pull every engine into a training run)."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (30, 30, 30)
MUTED = (120, 120, 120)


def font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # scalable since Pillow 10.1
    except TypeError:
        return ImageFont.load_default()


def loss_curves(records: list[dict[str, float]], keys: list[str], width: int = 640, panel: int = 140) -> Image.Image:
    """One small chart per loss (x = step), stacked: how a training run went, at a glance."""
    label_font = font(13)
    margin_l, margin_r, margin_t, margin_b = 60, 12, 20, 18
    canvas = Image.new("RGB", (width, panel * len(keys)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for i, key in enumerate(keys):
        steps = [r["step"] for r in records if key in r]
        values = [r[key] for r in records if key in r]
        top = i * panel
        x0, x1 = margin_l, width - margin_r
        y0, y1 = top + margin_t, top + panel - margin_b
        draw.rectangle((x0, y0, x1, y1), outline=MUTED)
        draw.text((x0, top + 3), key, fill=INK, font=label_font)
        if len(values) < 2:
            continue
        lo, hi = min(values), max(values)
        span, s_lo, s_span = (hi - lo) or 1.0, steps[0], (steps[-1] - steps[0]) or 1
        points = [(x0 + (s - s_lo) / s_span * (x1 - x0), y1 - (v - lo) / span * (y1 - y0))
                  for s, v in zip(steps, values)]
        draw.line(points, fill=(40, 90, 200), width=2)
        draw.text((2, y0), f"{hi:.3g}", fill=MUTED, font=label_font)
        draw.text((2, y1 - 12), f"{lo:.3g}", fill=MUTED, font=label_font)
        draw.text((x1 - 60, y1 + 2), f"step {steps[-1]}", fill=MUTED, font=label_font)
    return canvas
