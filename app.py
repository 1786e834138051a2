"""FaceComp: `streamlit run app.py` starts the app; its first page is home.py.

As the server starts, a thread imports torch and the package (1.5-2.5 s), loads the models and
computes Home's live example (facecomp.app.warm_up), while the server binds its port and the first
browser loads Streamlit's front end. Once an earlier start has kept that example on disk
(facecomp/app/first_page.py), Home is drawn from it without torch, and the thread first waits
for that (at most 10 s): torch's import would slow the server down meanwhile. Streamlit runs
the pages as usual: `app` below is how it learns of them (st.App; `streamlit run` finds it by
that name).
"""

import threading

import streamlit as st


def _warm_up() -> None:
    from facecomp.app import first_page

    first_page.wait_for_home()  # a Home drawn from disk goes first: it needs no torch
    from facecomp.app.warm_up import warm_up

    warm_up()


threading.Thread(target=_warm_up, daemon=True).start()
app = st.App("home.py")
