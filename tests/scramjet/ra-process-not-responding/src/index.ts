// Never gives its event loop back.
export default function () {
  for (;;) { /* busy */ }
}
