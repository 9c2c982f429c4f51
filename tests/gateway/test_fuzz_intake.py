"""Fuzzing: image decoding (ct_contract.preprocess) and the URL parser (gateway.fetch).

Contracts under test:
- load_model_input on any bytes either returns uint8 [S, S, C] or raises ImageDecodeError;
  every valid image Pillow can write (all modes, multi-frame, EXIF orientations) decodes.
- parse_url on any string either returns a Target or raises the 400 ApiError; numeric hosts name
  the same IPv4 address the C library's inet_aton gives, and no spelling of a non-public address
  passes the address check.
Runs derandomized (the same cases every run); the total number of cases is printed at the end
(by a module fixture, so no test has to run after the others).
Over 300 lines on purpose: one fuzzing module with one case counter, whose total is printed once.
"""

from __future__ import annotations

import io
import ipaddress
import socket
import time
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from PIL import Image

from ct_contract.pictures import decode_image
from ct_contract.preprocess import ImageDecodeError, load_model_input
from gateway import fetch
from gateway.errors import ApiError
from tests.fixtures.common import fuzz_scale, fuzz_settings

# Pillow warns about corrupt EXIF in mutated files; the decode contract is what is tested here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

CASES: Counter[str] = Counter()
MIN_TOTAL_CASES = 10_000
MAX_PIXELS = 2_000_000  # keeps mutated headers from asking for huge (but legal) allocations
SHAPES = [(1, 1), (1, 3), (32, 1), (32, 3), (48, 3), (7, 3)]


FUZZ_TESTS = 13  # the tests below that count their cases in CASES


@pytest.fixture(scope="module", autouse=True)
def case_total(request) -> Iterator[None]:
    """Prints the module's fuzz case count once its tests are done; when every fuzz test ran, the
    total must reach MIN_TOTAL_CASES (a check of the module, not a test that has to run last)."""
    CASES.clear()
    yield
    total = sum(CASES.values())
    detail = ", ".join(f"{name} {n}" for name, n in sorted(CASES.items()))
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # what capsys.disabled() does, module-wide
        print(f"\nfuzz cases run: {total} ({detail})")
    if len(CASES) == FUZZ_TESTS:
        assert total >= MIN_TOTAL_CASES * fuzz_scale(), dict(CASES)


def fuzz(examples: int):
    return fuzz_settings(examples, suppress=[HealthCheck.too_slow, HealthCheck.data_too_large])


def assert_model_input(data: bytes, size: int, channels: int) -> np.ndarray | None:
    """The decode contract: a well-formed array or ImageDecodeError, nothing else."""
    try:
        arr = load_model_input(data, size, channels, max_pixels=MAX_PIXELS)
    except ImageDecodeError:
        return None
    assert arr.dtype == np.uint8 and arr.shape == (size, size, channels)
    assert arr.flags.c_contiguous
    return arr


# ----------------------------------------------------------------------------- images

MODE_FORMATS = {
    "1": ["PNG", "TIFF", "BMP", "GIF"],
    "L": ["PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP"],
    "P": ["PNG", "TIFF", "BMP", "GIF"],
    "PT": ["PNG", "GIF"],  # palette with a transparent index
    "RGB": ["PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF"],
    "RGBA": ["PNG", "TIFF", "WEBP"],
    "LA": ["PNG", "TIFF"],
    "CMYK": ["JPEG", "TIFF"],
    "I;16": ["PNG", "TIFF"],
    "I": ["TIFF"],
    "F": ["TIFF"],
}
BANDS = {"1": 1, "L": 1, "P": 1, "PT": 1, "RGB": 3, "RGBA": 4, "LA": 2, "CMYK": 4}


def random_image(mode: str, width: int, height: int, rng: np.random.Generator) -> Image.Image:
    size = (width, height)
    if mode == "1":
        return Image.fromarray(rng.integers(0, 2, (height, width)).astype(bool))
    if mode in ("P", "PT"):
        img = Image.frombytes("P", size, rng.integers(0, 256, width * height, np.uint8).tobytes())
        img.putpalette(rng.integers(0, 256, 768, np.uint8).tobytes())
        if mode == "PT":
            img.info["transparency"] = int(rng.integers(0, 256))
        return img
    if mode == "I;16":
        return Image.frombytes(mode, size, rng.integers(0, 65536, width * height, "<u2").tobytes())
    if mode == "I":
        values = rng.integers(-(2**31), 2**31 - 1, (height, width), np.int32)
        return Image.fromarray(values)
    if mode == "F":
        return Image.fromarray(rng.normal(0, 1000, (height, width)).astype(np.float32))
    data = rng.integers(0, 256, width * height * BANDS[mode], np.uint8).tobytes()
    return Image.frombytes(mode, size, data)


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    if "transparency" in img.info and fmt in ("PNG", "GIF"):
        params.setdefault("transparency", img.info["transparency"])
    img.save(buf, fmt, **params)
    return buf.getvalue()


@st.composite
def image_files(draw, multi_frame: bool = False) -> tuple[str, str, bytes]:
    mode = draw(st.sampled_from(sorted(MODE_FORMATS)))
    fmt = draw(st.sampled_from(MODE_FORMATS[mode]))
    width = draw(st.integers(1, 40))
    height = draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    img = random_image(mode, width, height, rng)
    if multi_frame and fmt in ("GIF", "TIFF", "WEBP"):
        frames = [random_image(mode, width, height, rng) for _ in range(draw(st.integers(1, 3)))]
        return mode, fmt, encode(img, fmt, save_all=True, append_images=frames)
    return mode, fmt, encode(img, fmt)


@fuzz(1500)
@given(st.binary(max_size=2048), st.sampled_from(SHAPES))
def test_random_bytes_decode_or_raise(data: bytes, shape) -> None:
    CASES["random bytes"] += 1
    assert_model_input(data, *shape)


MAGICS = [
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF\x00\x00\x00\x00WEBP",
    b"P5\n",
    b"P6\n",
    b"\x00\x00\x01\x00",
    b"DICM",
]


@fuzz(1500)
@given(st.sampled_from(MAGICS), st.binary(max_size=1024), st.sampled_from(SHAPES))
def test_random_bytes_behind_a_real_magic_number(magic: bytes, rest: bytes, shape) -> None:
    CASES["magic + random bytes"] += 1
    assert_model_input(magic + rest, *shape)


@fuzz(1200)
@given(image_files(), st.sampled_from(SHAPES))
def test_every_valid_image_decodes(image, shape) -> None:
    CASES["valid images"] += 1
    mode, fmt, data = image
    assert assert_model_input(data, *shape) is not None, f"{mode} {fmt} did not decode"


@fuzz(400)
@given(image_files(multi_frame=True), st.sampled_from(SHAPES))
def test_multi_frame_images_decode_their_first_frame(image, shape) -> None:
    CASES["multi-frame images"] += 1
    mode, fmt, data = image
    assert assert_model_input(data, *shape) is not None, f"multi-frame {mode} {fmt}"
    assert decode_image(data).size == Image.open(io.BytesIO(data)).size


@fuzz(1200)
@given(image_files(), st.data(), st.sampled_from(SHAPES))
def test_truncated_and_corrupted_images(image, data, shape) -> None:
    CASES["truncated/corrupted images"] += 1
    _, _, raw = image
    cut = data.draw(st.integers(0, len(raw)), label="cut")
    flips = data.draw(
        st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), max_size=4),
        label="flips",
    )
    mutated = bytearray(raw)
    for index, value in flips:
        mutated[index] = value
    assert_model_input(bytes(mutated[:cut]), *shape)


@fuzz(400)
@given(
    st.integers(1, 8),
    st.integers(1, 30),
    st.integers(1, 30),
    st.sampled_from(["JPEG", "PNG"]),
    st.sampled_from(["RGB", "L"]),
)
def test_exif_orientation_is_applied(orientation, width, height, fmt, mode) -> None:
    CASES["EXIF orientations"] += 1
    img = random_image(mode, width, height, np.random.default_rng(orientation))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(img, fmt, exif=exif.tobytes())
    upright = decode_image(data)
    expected = (height, width) if orientation >= 5 else (width, height)
    assert upright.size == expected
    assert assert_model_input(data, 32, 3) is not None


@fuzz(300)
@given(
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-(2**31), 2**31 - 1),
    st.sampled_from(["I", "I;16", "F"]),
    st.integers(1, 20),
    st.integers(1, 20),
)
def test_wide_pixel_ranges_scale_into_uint8(lo, hi, mode, width, height) -> None:
    CASES["16/32-bit ranges"] += 1
    lo, hi = sorted((lo, hi))
    if mode == "I;16":
        lo, hi = lo % 65536, hi % 65536
        lo, hi = sorted((lo, hi))
    values = np.linspace(lo, hi, width * height).reshape(height, width)
    dtype = {"I": np.int32, "I;16": "<u2", "F": np.float32}[mode]
    img = Image.frombytes(mode, (width, height), values.astype(dtype).tobytes())
    arr = assert_model_input(encode(img, "TIFF"), 16, 1)
    assert arr is not None


# ----------------------------------------------------------------------------- URLs

# Any code point, with ASCII and lone surrogates (JSON strings can carry them) drawn often.
URL_CHARS = st.one_of(
    st.characters(max_codepoint=0x7F),
    st.characters(exclude_categories=()),
    st.integers(0xD800, 0xDFFF).map(chr),
)
URL_PIECES = st.sampled_from(
    [
        "http://",
        "https://",
        "HTTP://",
        "file://",
        "gopher://",
        "//",
        "/",
        ":",
        "@",
        "[",
        "]",
        "%",
        "%40",
        "%2e",
        ".",
        "..",
        "?",
        "#",
        "\\",
        " ",
        "\t",
        "\n",
        "\x00",
        "0x",
        "0",
        "127",
        "1",
        "255",
        "::",
        "ffff",
        "localhost",
        "example.com",
        "\uff0e",
        "\u3002",
        "\uff11",
        "xn--",
        ":80",
        ":0",
        ":65536",
        "user:pass",
        "a" * 70,
        "\ud800",
    ]
)


def assert_parse_contract(url: str) -> fetch.Target | None:
    try:
        target = fetch.parse_url(url)
    except ApiError as error:
        assert error.status == 400 and error.code in ("url_invalid", "url_forbidden")
        return None
    assert target.scheme in ("http", "https") and 1 <= target.port <= 65535
    assert target.host and target.host == target.host.lower() and target.host.isascii()
    assert target.request_target.startswith("/") and target.request_target.isascii()
    assert not any(c in target.request_target for c in " \t\r\n\x00\\#")
    assert "@" not in target.host
    assert fetch.parse_url(target.url) == target  # normalised form is a fixed point
    return target


@fuzz(1500)
@given(st.text(URL_CHARS, max_size=120))
def test_url_parser_on_random_text(text: str) -> None:
    CASES["url: random text"] += 1
    assert_parse_contract(text)
    assert_parse_contract("http://" + text)


@fuzz(1500)
@given(st.lists(URL_PIECES, max_size=12))
def test_url_parser_on_url_like_pieces(pieces: list[str]) -> None:
    CASES["url: pieces"] += 1
    assert_parse_contract("".join(pieces))


@fuzz(1000)
@given(
    st.sampled_from(["http://", "https://", "HTTP://"]),
    st.sampled_from(["example.com", "1.2.3.4", "[2606:4700::1]", "xn--9ca.com", "a.b.c."]),
    st.sampled_from(["", ":1", ":443", ":08080"]),
    st.text(URL_CHARS, max_size=60),
)
def test_url_parser_on_valid_prefix_random_tail(scheme, host, port, tail) -> None:
    CASES["url: valid prefix, random tail"] += 1
    target = assert_parse_contract(f"{scheme}{host}{port}/{tail}")
    clean = not any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in tail)
    if clean and not any(0xD800 <= ord(c) <= 0xDFFF for c in tail):
        assert target is not None, "a well-formed host with any printable path is accepted"


def _spell(number: int, style: str, width: int) -> str:
    if style == "hex":
        return f"0x{number:0{width}x}"
    if style == "HEX":
        return f"0X{number:0{width}X}"
    if style == "oct":
        return f"0{number:0{width}o}"
    return str(number)


@st.composite
def ipv4_spellings(draw) -> tuple[str, ipaddress.IPv4Address]:
    """A numeric host in inet_aton syntax (1-4 parts, any radix) and the address it names."""
    address = ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1)))
    octets = address.packed
    parts_count = draw(st.integers(1, 4))
    numbers = list(octets[: parts_count - 1]) + [int.from_bytes(octets[parts_count - 1 :], "big")]
    styles = draw(
        st.lists(
            st.sampled_from(["dec", "hex", "HEX", "oct"]),
            min_size=parts_count,
            max_size=parts_count,
        )
    )
    widths = draw(st.lists(st.integers(0, 4), min_size=parts_count, max_size=parts_count))
    spelled = ".".join(_spell(n, s, w) for n, s, w in zip(numbers, styles, widths, strict=True))
    return spelled + draw(st.sampled_from(["", "."])), address


@fuzz(1000)
@given(ipv4_spellings())
def test_numeric_hosts_name_what_inet_aton_names(spelling) -> None:
    CASES["url: IPv4 spellings"] += 1
    spelled, address = spelling
    target = fetch.parse_url(f"http://{spelled}/")
    assert target.ip == address
    assert ipaddress.IPv4Address(socket.inet_aton(spelled.rstrip("."))) == address
    if not fetch.is_public_address(address):
        with pytest.raises(ApiError) as info:
            fetch.checked_addresses(target, allow_private=False, deadline=time.monotonic() + 1)
        assert info.value.code == "url_forbidden"


@fuzz(1000)
@given(st.from_regex(r"\A[0-9a-fA-FxX.]{1,24}\Z"))
def test_numeric_looking_hosts_agree_with_inet_aton(host: str) -> None:
    CASES["url: numeric-looking hosts"] += 1
    try:
        libc = ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        libc = None
    target = assert_parse_contract(f"http://{host}/")
    if target is None:
        assert libc is None or host.endswith(".."), f"{host!r} is {libc} to inet_aton"
    elif target.ip is not None:
        assert libc is None or target.ip == libc
    else:
        assert libc is None, f"{host!r} parsed as a name, but inet_aton reads {libc}"


@fuzz(600)
@given(st.sampled_from(["::ffff:", "64:ff9b::", "::"]), st.integers(0, 2**32 - 1))
def test_embedded_ipv4_follows_the_ipv4_policy(prefix: str, value: int) -> None:
    CASES["url: embedded IPv4 in IPv6"] += 1
    v4 = ipaddress.IPv4Address(value)
    target = fetch.parse_url(f"http://[{prefix}{v4}]/")
    allowed = fetch.address_allowed(target.ip, allow_private=False)
    if prefix == "::":  # IPv4-compatible addresses are deprecated and refused outright
        assert not allowed
    else:
        assert allowed == fetch.is_public_address(v4)
    six_to_four = ipaddress.IPv6Address((0x2002 << 112) | (value << 80))
    assert fetch.is_public_address(six_to_four) == fetch.is_public_address(v4)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_pixels_do_not_blank_the_image(bad: float) -> None:
    pixels = np.tile(np.linspace(0, 1000, 16, dtype=np.float32), (16, 1))
    pixels[0, 0] = bad
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "TIFF")
    try:
        arr = load_model_input(buf.getvalue(), 16, 1)
    except ImageDecodeError:
        return  # refusing the file is an acceptable answer too
    assert arr[8, 15, 0] > 200  # the brightest finite column stays bright
