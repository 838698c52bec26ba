"""Raw readers: the scan that picks ijson's parser for a JSON array."""

import pytest

from sftmix import raw


@pytest.mark.parametrize("chunk", [1, 5, 6, 7, 11, 12, 13, 1 << 24])
def test_lone_surrogate_escape_is_found_wherever_a_read_ends(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(raw, "SCAN_BYTES", chunk)
    path = tmp_path / "a.json"
    for text, lone in ((rb'["ab \ud83d\ude00 c", "\u00e9"]', False), (rb'["ab \ud83d c"]', True),
                       (rb'["ab \ude00 c"]', True), (rb'["\ud83d\ude00\ude01"]', True), (rb'["\uD83D\uDE00"]', False)):
        path.write_bytes(text)
        found = raw._has_lone_surrogate_escape(path)
        assert found is lone, (text, chunk)
