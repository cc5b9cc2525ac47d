"use strict";
// Shared by the customer pages under /portal (the card page, the hosted invoice page): JSON calls,
// Stripe.js, saving a card (SetupIntent) and confirming an invoice's PaymentIntent (3-D Secure).
// Loaded from 'self' (the pages' CSP allows no other script but Stripe.js and the card page's own).
window.kassaPortal = (function () {
  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
    });
    const data = await response.json();
    if (!response.ok) {
      // the error's code too (link_expired, link_invalid …): a page may say it in the customer's words
      const error = new Error((data.error && data.error.message) || response.statusText);
      error.code = data.error && data.error.code;
      throw error;
    }
    return data;
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src; s.onload = resolve; s.onerror = () => reject(new Error("could not load Stripe.js"));
      document.head.appendChild(s);
    });
  }

  // Stripe.js (locally, localstripe's shim) for a session answer ({stripe_js_url, publishable_key})
  async function stripeFor(session) {
    if (typeof Stripe === "undefined") await loadScript(session.stripe_js_url);
    return Stripe(session.publishable_key);
  }

  // a new card: Stripe.js confirms the SetupIntent; the page then asks kassa to save it and charge
  async function confirmCard(stripe, clientSecret, card) {
    const confirmed = await stripe.confirmCardSetup(clientSecret, {payment_method: {card}});
    if (confirmed.error) throw new Error(confirmed.error.message);
    return confirmed;
  }

  // 3-D Secure for one invoice's PaymentIntent: Stripe.js asks the bank, then kassa applies the
  // outcome (POST confirmUrl with body + payment_intent; it answers {invoices: [row]}); nothing is
  // charged again. Returns the invoice's row ({status, number, …}).
  async function authenticate(stripe, confirmUrl, body, clientSecret, paymentIntent, paymentMethod) {
    const data = paymentMethod ? {payment_method: paymentMethod} : undefined;
    const confirmed = await stripe.confirmCardPayment(clientSecret, data);
    const intent = (confirmed.paymentIntent && confirmed.paymentIntent.id) || paymentIntent;
    const done = await post(confirmUrl, Object.assign({}, body, {payment_intent: intent}));
    const row = done.invoices[0] || {};
    if (confirmed.error && row.status !== "paid") throw new Error(confirmed.error.message || "The authentication failed.");
    return row;
  }

  return {post, loadScript, stripeFor, confirmCard, authenticate};
})();
