"""A feature another backend provides is refused in one line naming that backend."""

import keras
import pytest

from segprune.backend.capabilities import BackendUnsupported, require_backend


def test_the_running_backend_passes_and_another_is_named_in_the_refusal():
    require_backend("Anything", (keras.backend.backend(),))
    with pytest.raises(BackendUnsupported, match=rf"LiteRT export needs the Keras backend 'other'; this process runs '{keras.backend.backend()}'.*KERAS_BACKEND=other"):
        require_backend("LiteRT export", ("other",))
